// NBDServerTests: placeholder.
