"""The latency tables `latency.py` and `peer.py` plan the knapsack on."""

import keras_slim


def knapsack_tables(model, runtime, kinds, plans=24, round_to=1,
                    memory=False, scan=True):
    """`{label: LatencyTable}`: "knapsack", the table as built on `runtime`
    (`memory`: merges, pooling and padding priced too), and/or
    "knapsack/fit", the same table calibrated to end-to-end timings of
    `plans` random slim models; `kinds` names which ("plain",
    "calibrated")."""
    table = keras_slim.build_latency_table(model, runtime, scan=scan,
                                           memory=memory)
    tables = {}
    if "plain" in kinds:
        tables["knapsack"] = table
    if "calibrated" in kinds:
        tables["knapsack/fit"] = keras_slim.calibrate_latency_table(
            model, table, runtime, plans=plans, round_to=round_to)
    return tables
