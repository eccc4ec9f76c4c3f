# rules for the models stage
