"""Shared s2DPES test inputs."""

#: A CIF with a partially occupied site (Cu/Au at 0.5 each): pesflow must refuse it.
PARTIAL_CIF = """data_partial
_cell_length_a 4.0
_cell_length_b 4.0
_cell_length_c 4.0
_cell_angle_alpha 90
_cell_angle_beta 90
_cell_angle_gamma 90
_symmetry_space_group_name_H-M 'P 1'
loop_
_atom_site_label
_atom_site_type_symbol
_atom_site_fract_x
_atom_site_fract_y
_atom_site_fract_z
_atom_site_occupancy
Cu1 Cu 0 0 0 0.5
Au1 Au 0 0 0 0.5
O1 O 0.5 0.5 0.5 1.0
"""
