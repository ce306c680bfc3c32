"""pesflow.store"""
