// A C interface to ALE 0.12's ALEInterface for `src/env/ale.rs`: ALE 0.12 has C++ types in its
// API (std::filesystem paths, ActionVect, ALEScreen, ALEState) and throws exceptions, neither
// of which may cross into Rust. Every function here catches what ALE throws and reports it as
// a status and a message.

#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "ale/ale_interface.hpp"

using ale::ALEInterface;
using ale::ALEState;

namespace {

void copy_message(const char* what, char* buf, size_t len) {
  if (buf == nullptr || len == 0) return;
  std::strncpy(buf, what, len - 1);
  buf[len - 1] = '\0';
}

int copy_actions(const ale::ActionVect& actions, int* out, int cap) {
  int n = static_cast<int>(actions.size());
  for (int i = 0; i < n && i < cap; i++) out[i] = static_cast<int>(actions[i]);
  return n;
}

}  // namespace

extern "C" {

// ALE's log level: 0 info, 1 warning, 2 error.
void sap_ale_set_logger_mode(int mode) {
  ale::Logger::setMode(static_cast<ale::Logger::mode>(mode));
}

// A new emulator, or null (with the reason in `buf`).
ALEInterface* sap_ale_new(char* buf, size_t len) {
  try {
    return new ALEInterface();
  } catch (const std::exception& e) {
    copy_message(e.what(), buf, len);
    return nullptr;
  }
}

void sap_ale_delete(ALEInterface* ale) { delete ale; }

// Sets `random_seed` and `repeat_action_probability`, then loads the ROM. 0 on success; else
// 1 with ALE's message in `buf`.
int sap_ale_load(ALEInterface* ale, const char* path, int seed, float sticky, char* buf,
                 size_t len) {
  try {
    ale->setInt("random_seed", seed);
    ale->setFloat("repeat_action_probability", sticky);
    ale->loadROM(path);
    return 0;
  } catch (const std::exception& e) {
    copy_message(e.what(), buf, len);
    return 1;
  }
}

int sap_ale_act(ALEInterface* ale, int action) {
  return static_cast<int>(ale->act(static_cast<ale::Action>(action)));
}

int sap_ale_game_over(ALEInterface* ale) { return ale->game_over() ? 1 : 0; }

void sap_ale_reset_game(ALEInterface* ale) { ale->reset_game(); }

int sap_ale_lives(ALEInterface* ale) { return ale->lives(); }

int sap_ale_screen_height(ALEInterface* ale) {
  return static_cast<int>(ale->getScreen().height());
}

int sap_ale_screen_width(ALEInterface* ale) {
  return static_cast<int>(ale->getScreen().width());
}

// Copies the screen's palette indices; `out` holds height x width bytes.
void sap_ale_screen(ALEInterface* ale, unsigned char* out) {
  const ale::ALEScreen& screen = ale->getScreen();
  std::memcpy(out, screen.getArray(), screen.height() * screen.width());
}

// Copies the screen as interleaved RGB; `out` holds height x width x 3 bytes.
void sap_ale_screen_rgb(ALEInterface* ale, unsigned char* out) {
  const ale::ALEScreen& screen = ale->getScreen();
  std::vector<unsigned char> rgb(screen.height() * screen.width() * 3);
  ale->getScreenRGB(rgb);
  std::memcpy(out, rgb.data(), rgb.size());
}

// The packed RGB (0x00RRGGBB) of every palette index, in the loaded game's TV format (NTSC,
// PAL or SECAM); `out` holds 256 values.
void sap_ale_palette(ALEInterface* ale, uint32_t* out) {
  for (int i = 0; i < 256; i++) out[i] = ale->theOSystem->colourPalette().getRGB(i);
}

// Writes up to `cap` action codes; returns how many the set holds.
int sap_ale_minimal_actions(ALEInterface* ale, int* out, int cap) {
  return copy_actions(ale->getMinimalActionSet(), out, cap);
}

int sap_ale_legal_actions(ALEInterface* ale, int* out, int cap) {
  return copy_actions(ale->getLegalActionSet(), out, cap);
}

// The whole emulator state, its random generators included.
ALEState* sap_ale_clone_state(ALEInterface* ale) { return new ALEState(ale->cloneState(true)); }

void sap_ale_restore_state(ALEInterface* ale, const ALEState* state) {
  ale->restoreState(*state);
}

void sap_ale_delete_state(ALEState* state) { delete state; }

}  // extern "C"
