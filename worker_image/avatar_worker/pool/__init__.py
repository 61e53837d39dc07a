"""The pool worker (`python -m avatar_worker pool`): one process serving up to its slot count of
sessions at once, one per-session `Worker` per slot, sharing the renderer's loaded model. It
learns of its sessions by watching its grant, the Role named like its ServiceAccount, which the
operator rewrites as sessions are bound to it and released (avatar_crds.contract)."""
