"""The sandbox venue: a local Polymarket.

Pure parts (no I/O, injected clock and random source):
    book.py       one token's order book in integer micro units, wire format
    events.py     what the venue tells its market-channel subscribers
    state.py      every book of every market; taker executions and their reverts
    simulator.py  random walk, arbitrage gaps, tick size changes
    faults.py     the fault injector (WS frames and HTTP responses)
    markets.py    market and token ids (sandbox.deploy.market_infos, or a stand-in)
The shell:
    market_ws.py  the `/ws/market` channel (aiohttp), fan-out with faults
    rest_market.py  `/book`, `/books`, `/markets` (Polymarket's REST formats)
    actor.py      `VenueActor` and the app factory `build_app` (CLOB order routes
                  plug in through `sandbox.venue.clob.install(app, venue)`)
"""
