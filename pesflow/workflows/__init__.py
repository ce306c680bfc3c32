"""pesflow.workflows"""
