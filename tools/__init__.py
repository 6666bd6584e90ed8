"""Action executors: desktop (mss + pyautogui) and browser (Playwright)."""
