#include <gtest/gtest.h>

#include "src/password/schemes.h"
#include "src/util/log.h"

int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  mailauth::password::init();
  mailauth::log::init(mailauth::log::Target::Stderr, mailauth::log::Level::Error, "unit_tests");
  return RUN_ALL_TESTS();
}
