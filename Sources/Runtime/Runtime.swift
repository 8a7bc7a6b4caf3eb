// Runtime: datapath loop, control socket, guests.
