"""The message bus: codec, typed messages, topics, sockets, fakes, sniffer.

The only package that imports zmq.
"""
