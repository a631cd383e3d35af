"""Import the study from the repository root when a module runs as a file.

`python studies/fashion_mnist/study.py` puts this folder first on
`sys.path`, where the study's own modules (`flags`, `data`, `runs`, ...)
would shadow packages of those names and `from studies ...` would fail.
Imported first by a module run as a file, this puts the repository root
in that place. `python -m studies.fashion_mnist.study` does not need it.
"""

import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [os.path.dirname(os.path.dirname(_HERE))] + [
    p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import studies.fashion_mnist  # noqa: E402, F401
