"""Key delivery: who may receive a content key, and (later) the HTTP service that hands keys out.

`restrictions` is pure — token templates, token verification, IP ranges and policy evaluation, with
no HTTP and no database — so the entity rules can validate what clients store with the very code
that later judges key requests. Keep this package's `__init__` free of surface imports for that
reason.
"""
