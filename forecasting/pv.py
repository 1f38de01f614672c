"""placeholder"""
class PVForecaster:
    def __init__(self, *a, **k): pass
