"""Guarding a public endpoint: who the client is, which sites may call, and how much each
client may ask for."""

from sidechat.guard.client import TrustedProxies, client_address
from sidechat.guard.limits import Bucket, ClientLimits, LimitPolicy, RateLimited, Ticket, client_key
from sidechat.guard.origin import OriginPolicy

__all__ = [
    "Bucket",
    "ClientLimits",
    "LimitPolicy",
    "OriginPolicy",
    "RateLimited",
    "Ticket",
    "TrustedProxies",
    "client_address",
    "client_key",
]
