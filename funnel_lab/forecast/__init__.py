"""funnel_lab.forecast"""
