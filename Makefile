# Slider Studio: `make run` starts the app on the demo project, `make test` runs the suite.
# Both create .venv and install what is missing first; nothing else needs to be installed by hand.

PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
QT_SYSTEM_LIBS := libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3 libglib2.0-0
# What Qt's xcb platform plugin (a real X11 window) links: `ldd` of plugins/platforms/libqxcb.so,
# lib/libQt6XcbQpa.so.6 and plugins/xcbglintegrations/*.so, mapped to Debian/Ubuntu packages.
QT_XCB_LIBS := libx11-6 libx11-xcb1 libxcb1 libxcb-cursor0 libxcb-glx0 libxcb-icccm4 libxcb-image0 \
  libxcb-keysyms1 libxcb-randr0 libxcb-render0 libxcb-render-util0 libxcb-shape0 libxcb-shm0 libxcb-sync1 \
  libxcb-util1 libxcb-xfixes0 libxcb-xkb1 libxkbcommon-x11-0
# Only the tests need these: a virtual X server and xwininfo (tests/gui/test_real_display.py).
TEST_SYSTEM_TOOLS := xvfb x11-utils
PYTEST_ARGS ?=

.PHONY: run test test-slow demo system-deps test-system-deps install clean installer installer-test

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system-deps
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned, so that nothing pulls a CUDA build in as a dependency.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

# Qt needs shared libraries that a bare Debian image lacks (the xcb set for a real window); install
# only the missing ones. Ubuntu 24.04 renamed some (libglib2.0-0t64), so that name counts as present too.
# Without dpkg (not Debian/Ubuntu) nothing is installed: the README lists the libraries.
APT_INSTALL_MISSING = missing=""; command -v dpkg >/dev/null || echo "no dpkg: not checking $(2)"; \
	command -v dpkg >/dev/null && for p in $(1); do \
	  dpkg -s $$p >/dev/null 2>&1 || dpkg -s $${p}t64 >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "Installing $(2):$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO="sudo"; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

system-deps:
	@$(call APT_INSTALL_MISSING,$(QT_SYSTEM_LIBS) $(QT_XCB_LIBS),system libraries for Qt)

test-system-deps: system-deps
	@$(call APT_INSTALL_MISSING,$(TEST_SYSTEM_TOOLS),test tools)

run: $(STAMP) system-deps
	$(BIN)/sliderstudio gui

test: $(STAMP) test-system-deps
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-slow: $(STAMP) test-system-deps
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

demo: $(STAMP)
	$(BIN)/sliderstudio demo --workdir demo-work

# Installer (packaging/README.md): a self-contained Linux bundle in dist/, rebuilt only when the
# package or packaging/ changed; installer-test runs the unpacked bundle outside the checkout.
PACKAGING_STAMP := $(VENV)/.packaging-stamp
VERSION = $(shell sed -n 's/^__version__ = "\(.*\)"/\1/p' sliderstudio/__init__.py)
BUNDLE_TGZ = dist/SliderStudio-$(VERSION)-linux-$(shell uname -m | sed 's/aarch64/arm64/').tar.gz
BUNDLE_INPUTS = $(shell find sliderstudio presets resources packaging -type f -not -path '*/__pycache__/*') pyproject.toml

$(PACKAGING_STAMP): $(STAMP) packaging/requirements.txt
	$(BIN)/python -m pip install -q -r packaging/requirements.txt
	touch $(PACKAGING_STAMP)

# system-deps first: PyInstaller copies the xcb libraries it finds into the bundle, for desktops without them.
installer: $(PACKAGING_STAMP) system-deps
	@$(MAKE) --no-print-directory $(BUNDLE_TGZ)

$(BUNDLE_TGZ): $(BUNDLE_INPUTS)
	nice $(BIN)/python packaging/build.py

installer-test: installer test-system-deps
	bash packaging/smoke_test.sh $(BUNDLE_TGZ)

clean:
	rm -rf $(VENV) build dist *.egg-info
