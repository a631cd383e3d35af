"""Planners: every `plan_*` criterion with its scores, constraints, guided
and budgeted plans. A planner returns a `PruningPlan`; it never cuts."""

__all__ = []
