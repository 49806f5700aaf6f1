// Qcow2Tests: placeholder.
