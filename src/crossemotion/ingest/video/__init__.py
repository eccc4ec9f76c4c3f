"""Clips to frames: the bounded in-process PyAV reader, its worker pool, the decode stage."""
