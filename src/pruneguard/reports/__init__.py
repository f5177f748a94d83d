"""pruneguard.reports"""
