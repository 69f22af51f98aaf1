"""bhuktani: a bill-payment gateway for Nepali ISPs."""

__version__ = "0.1.0"
