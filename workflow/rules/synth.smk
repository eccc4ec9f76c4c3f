# rules for the synth stage
