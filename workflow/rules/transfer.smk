# rules for the transfer stage
