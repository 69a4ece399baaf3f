"""The actor framework: what every process has, whatever its role.

context (the Protocol an actor is handed), actor (the base class a role
implements), shell (the concrete context: sockets, stats, breaker follower),
launcher (one process, one actor: lifecycle and signals), registry (actors
found by entry point), clock, logs, storage, breaker_follower.
"""
