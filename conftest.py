"""Repo-wide pytest set-up: the real test environment's fixtures (control_plane, gpu_nodes,
livekit_server, helm, ...) are available to every test directory; see testbed/fixtures.py."""

pytest_plugins = ["testbed.fixtures"]
