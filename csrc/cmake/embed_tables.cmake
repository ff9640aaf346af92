# cmake -DIN=laplace_tables.npy -DOUT=lotc_tables_data.cpp -P embed_tables.cmake
# The shipped frequency tables as a byte array, so the library and the executable need no data
# file at run time (the bytes are checked against the pinned CRC-32 when first used).
file(READ "${IN}" hex HEX)
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
file(WRITE "${OUT}" "// Generated from ${IN} by embed_tables.cmake. Do not edit.\n#include <cstddef>\n"
     "extern \"C\" const unsigned char lotc_tables_npy[] = {\n${bytes}};\n"
     "extern \"C\" const size_t lotc_tables_npy_size = sizeof(lotc_tables_npy);\n")
