// NBDTLSTests: placeholder.
