"""funnel_lab.charts"""
