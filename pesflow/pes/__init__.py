"""pesflow.pes"""
