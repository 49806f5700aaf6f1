// Qcow2 module: placeholder until its first real file lands.
