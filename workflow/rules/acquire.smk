# rules for the acquire stage
