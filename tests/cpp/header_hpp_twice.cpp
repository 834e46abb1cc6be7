// detcore.hpp included twice (and after detcore.h): compiled by ctest (header_hpp_twice).
#include <detcore.h>
#include <detcore.hpp>
#include <detcore.hpp>

int header_user();
int header_user() { return det::version().empty() ? 1 : 0; }
