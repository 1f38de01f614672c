"""Simulated fleets that speak the real protocols to a real server (``dso demo``, tests): 2030.5 rooftop-PV
sites with plausible PV/load profiles. Client side only: nothing here is imported by the server."""
