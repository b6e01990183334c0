"""funnel_lab.simulate"""
