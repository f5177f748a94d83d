"""pruneguard.cli"""
