"""Flappy Bird in pygame: one file, everything drawn with shapes, no assets.

SPACE (or a mouse click) flaps; SPACE on the title screen starts a round and on
the game-over screen starts a new one; closing the window quits.
"""

from __future__ import annotations

import random
import sys

import pygame

WIDTH, HEIGHT = 400, 600
GROUND_Y = HEIGHT - 80
FPS = 60

GRAVITY = 0.45          # px per frame^2
FLAP_SPEED = -8.0       # px per frame, set (not added) on each flap
MAX_FALL = 12.0
PIPE_WIDTH = 64
PIPE_GAP = 160
PIPE_SPEED = 3.0        # px per frame
PIPE_SPACING = 220      # px between consecutive pipe pairs

SKY = (112, 197, 206)
GROUND = (222, 216, 149)
GRASS = (92, 184, 74)
PIPE = (84, 170, 60)
PIPE_EDGE = (40, 110, 30)
BIRD = (250, 204, 40)
WHITE = (255, 255, 255)
BLACK = (20, 20, 20)
ORANGE = (240, 120, 40)


class Bird:
    """The player: a circle with an eye and a beak, moved by gravity and flaps."""

    RADIUS = 15

    def __init__(self) -> None:
        self.x = WIDTH // 3
        self.y = HEIGHT / 2
        self.vy = 0.0

    def flap(self) -> None:
        self.vy = FLAP_SPEED

    def update(self) -> None:
        self.vy = min(self.vy + GRAVITY, MAX_FALL)
        self.y += self.vy

    @property
    def rect(self) -> pygame.Rect:
        r = self.RADIUS - 2  # a slightly forgiving hitbox
        return pygame.Rect(self.x - r, int(self.y) - r, 2 * r, 2 * r)

    def draw(self, surf: pygame.Surface) -> None:
        cx, cy = self.x, int(self.y)
        pygame.draw.circle(surf, BIRD, (cx, cy), self.RADIUS)
        pygame.draw.circle(surf, BLACK, (cx, cy), self.RADIUS, 2)
        pygame.draw.circle(surf, WHITE, (cx + 6, cy - 5), 5)
        pygame.draw.circle(surf, BLACK, (cx + 7, cy - 5), 2)
        pygame.draw.polygon(surf, ORANGE, [(cx + 12, cy), (cx + 22, cy + 3), (cx + 12, cy + 6)])


class PipePair:
    """A top and a bottom pipe with a gap between them, scrolling left."""

    def __init__(self, x: float) -> None:
        self.x = x
        self.gap_top = random.randint(80, GROUND_Y - PIPE_GAP - 60)
        self.passed = False

    def update(self) -> None:
        self.x -= PIPE_SPEED

    def rects(self) -> tuple[pygame.Rect, pygame.Rect]:
        top = pygame.Rect(int(self.x), 0, PIPE_WIDTH, self.gap_top)
        bottom_y = self.gap_top + PIPE_GAP
        bottom = pygame.Rect(int(self.x), bottom_y, PIPE_WIDTH, GROUND_Y - bottom_y)
        return top, bottom

    def draw(self, surf: pygame.Surface) -> None:
        for r in self.rects():
            pygame.draw.rect(surf, PIPE, r)
            pygame.draw.rect(surf, PIPE_EDGE, r, 3)
        top, bottom = self.rects()
        cap = 26
        pygame.draw.rect(surf, PIPE, (top.x - 4, top.bottom - cap, PIPE_WIDTH + 8, cap))
        pygame.draw.rect(surf, PIPE_EDGE, (top.x - 4, top.bottom - cap, PIPE_WIDTH + 8, cap), 3)
        pygame.draw.rect(surf, PIPE, (bottom.x - 4, bottom.y, PIPE_WIDTH + 8, cap))
        pygame.draw.rect(surf, PIPE_EDGE, (bottom.x - 4, bottom.y, PIPE_WIDTH + 8, cap), 3)


class Game:
    """Title screen, play and game over, in one loop."""

    def __init__(self) -> None:
        pygame.init()
        pygame.display.set_caption("Flappy Bird")
        self.screen = pygame.display.set_mode((WIDTH, HEIGHT))
        self.clock = pygame.time.Clock()
        self.big = pygame.font.Font(None, 64)
        self.small = pygame.font.Font(None, 32)
        self.best = 0
        self.reset()
        self.state = "title"

    def reset(self) -> None:
        self.bird = Bird()
        self.pipes = [PipePair(WIDTH + 60)]
        self.score = 0
        self.ground_shift = 0.0

    def run(self) -> None:
        while True:
            for event in pygame.event.get():
                if event.type == pygame.QUIT:
                    return
                pressed = (event.type == pygame.KEYDOWN and event.key == pygame.K_SPACE) or \
                    (event.type == pygame.MOUSEBUTTONDOWN and event.button == 1)
                if pressed:
                    self.press()
            self.update()
            self.draw()
            pygame.display.flip()
            self.clock.tick(FPS)

    def press(self) -> None:
        if self.state == "title":
            self.state = "play"
            self.bird.flap()
        elif self.state == "play":
            self.bird.flap()
        else:
            self.reset()
            self.state = "title"

    def update(self) -> None:
        if self.state != "play":
            return
        self.bird.update()
        self.ground_shift = (self.ground_shift + PIPE_SPEED) % 24
        for p in self.pipes:
            p.update()
            if not p.passed and p.x + PIPE_WIDTH < self.bird.x:
                p.passed = True
                self.score += 1
        if self.pipes[-1].x < WIDTH - PIPE_SPACING:
            self.pipes.append(PipePair(WIDTH + 10))
        self.pipes = [p for p in self.pipes if p.x + PIPE_WIDTH > -10]
        hit_pipe = any(self.bird.rect.colliderect(r) for p in self.pipes for r in p.rects())
        if hit_pipe or self.bird.y + Bird.RADIUS >= GROUND_Y or self.bird.y < -Bird.RADIUS:
            self.bird.y = min(self.bird.y, GROUND_Y - Bird.RADIUS)
            self.state = "over"
            self.best = max(self.best, self.score)

    def draw(self) -> None:
        s = self.screen
        s.fill(SKY)
        for p in self.pipes:
            p.draw(s)
        pygame.draw.rect(s, GROUND, (0, GROUND_Y, WIDTH, HEIGHT - GROUND_Y))
        pygame.draw.rect(s, GRASS, (0, GROUND_Y, WIDTH, 12))
        for x in range(-24, WIDTH + 24, 24):
            gx = int(x - self.ground_shift)
            pygame.draw.line(s, PIPE_EDGE, (gx, GROUND_Y + 12), (gx + 12, GROUND_Y + 24), 3)
        self.bird.draw(s)
        self.text(str(self.score), self.big, WHITE, 50)
        if self.state == "title":
            self.text("Flappy Bird", self.big, WHITE, HEIGHT // 3)
            self.text("Press SPACE to start", self.small, BLACK, HEIGHT // 3 + 60)
        elif self.state == "over":
            panel = pygame.Rect(WIDTH // 2 - 150, HEIGHT // 3 - 40, 300, 150)
            pygame.draw.rect(s, WHITE, panel, border_radius=12)
            pygame.draw.rect(s, BLACK, panel, 3, border_radius=12)
            self.text("Game Over", self.big, ORANGE, HEIGHT // 3)
            self.text(f"Score {self.score}   Best {self.best}", self.small, BLACK, HEIGHT // 3 + 50)
            self.text("SPACE to play again", self.small, BLACK, HEIGHT // 3 + 80)

    def text(self, msg: str, font: pygame.font.Font, colour: tuple[int, int, int], y: int) -> None:
        img = font.render(msg, True, colour)
        self.screen.blit(img, img.get_rect(center=(WIDTH // 2, y)))


def main() -> None:
    Game().run()
    pygame.quit()
    sys.exit(0)


if __name__ == "__main__":
    main()
