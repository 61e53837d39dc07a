"""Sessions: POST /v1/sessions turned into an `AvatarSession` resource and its token Secret, and
the resources read back as public sessions.

- `schemas` holds the public session models (requests and views);
- `runnable` refuses what could never run (a tier, a transport or a room this version lacks);
- `mapping` turns a request into the resource and the resource into the public session (pure);
- `index` admits creates and answers reads from a watched index of the tenant's sessions;
- `service` does what each session endpoint does, between the plan rules (`api_shim.policy`),
  idempotency claims (`api_shim.idempotency`), the mapping and the cluster.
"""
