"""The actors of PolyArb-X: one sub-package per process, plus the shared runtime."""
