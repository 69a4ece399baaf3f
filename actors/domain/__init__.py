"""The trading domain, shared by the trader and the sandbox: money units, the
named values of the pipeline, fee maths, the CLOB market listing, the wallet.

Imports only `config` from this project: every other layer may import it.
"""
