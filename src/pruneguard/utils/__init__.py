"""Small helpers: seeding, devices, progress bars, atomic file I/O."""
