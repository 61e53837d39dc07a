"""Real upstream components for the tests (DESIGN.md section 6).

Binaries come from tools/testenv/build.sh; tests/conftest.py turns these
helpers into pytest fixtures.
"""
