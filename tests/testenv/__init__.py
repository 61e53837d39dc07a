"""Real upstream components for the tests (ARCHITECTURE.md section 10).

Binaries come from tools/testenv/build.sh; tests/conftest.py turns these
helpers into pytest fixtures.
"""
