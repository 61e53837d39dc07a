"""Real upstream components for the tests (ARCHITECTURE.md, "How it is tested").

Binaries come from tools/testenv/build.sh; tests/conftest.py turns these
helpers into pytest fixtures.
"""
