"""pruneguard.workflows"""
