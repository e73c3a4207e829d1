"""Outbound calls to the users' WorkflowEndpoint and FailureHook servers (pooled mTLS channels)."""

from .caller import GrpcDispatcher
from .channels import ChannelPool

__all__ = ["ChannelPool", "GrpcDispatcher"]
