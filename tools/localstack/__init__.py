"""The local stack behind tools/demo.sh: not a production package (see __main__.py)."""
