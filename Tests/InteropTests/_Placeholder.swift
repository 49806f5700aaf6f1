// InteropTests: placeholder.
