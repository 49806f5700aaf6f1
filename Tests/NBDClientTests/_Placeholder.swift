// NBDClientTests: placeholder.
