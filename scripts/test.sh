#!/usr/bin/env bash
# The whole test suite: cfutils unit tests, papermill smoke and bad-parameter runs, the book build,
# and strict nbval re-execution of every committed notebook. Extra arguments go to pytest.
source "$(dirname "$0")/env.sh"
export OMP_NUM_THREADS=1     # two pytest workers x one torch thread on two cores (never MPLBACKEND: see tooling)
python -m pytest -n 2 --dist loadfile -p no:cacheprovider \
    --nbval --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
    tests notebooks "$@"
