"""ESDL platform library."""
