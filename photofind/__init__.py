"""photofind: find photos on your own disk by what they show."""

__version__ = "0.1.0"
