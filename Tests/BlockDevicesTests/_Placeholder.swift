// BlockDevicesTests: placeholder.
