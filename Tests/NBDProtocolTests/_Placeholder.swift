// NBDProtocolTests: placeholder.
