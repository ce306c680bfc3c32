"""pesflow.search"""
