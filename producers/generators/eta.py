"""Taxi trips in one city, whose actual duration depends on what the trip's fields say and on hidden luck.

actual = (distance / the vehicle's free-flow speed) x traffic(hour, weekday, downtown) x weather x driver
         + an incident's delay (hidden, more likely in rain and rush hours) + pick-up/drop-off overhead,
         times a little noise.

- Traffic: weekday rush hours 7-9 and 16-19 (peaks at 8 and 17-18), a milder midday bump on weekends, free
  roads at night; trips with both ends downtown are slower.
- Weather: a city-wide process that changes every hour or two (clear, clouds, rain, heavy rain, fog, snow when
  it is cold enough) with a temperature that follows the time of day.
- Drivers: each has a hidden skill; the rating riders give is a noisy reading of it. Vehicles: motorbikes
  slip through traffic, vans and trucks are slower.
- The routing engine's `initial_estimated_travel_time_seconds` knows only the distance at a free-flow speed:
  the model's job is to learn everything else.

None of the hidden factors (skill, incident, the road factor of the route) is a field. `drift_at` switches
to a second traffic regime (road works): traffic 25% slower day and night, the evening rush starting at 15:00,
rain hurting more, and about half of the trips (those crossing the closed artery, a hidden factor) made 2.5x slower by a
detour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from eventing.domains.eta import DAYS, DOMAIN, VEHICLE_TYPES, WEATHER
from producers.generators.base import DAY_NAMES, GeneratedEvent, StreamGenerator, hour_of, iso, weekday_of
from producers.generators.categorical import Categorical

assert DAY_NAMES == DAYS

CENTER = (29.7604, -95.3698)  # Houston, as the original streams
KM_PER_DEG_LAT = 111.2
KM_PER_DEG_LON = 111.2 * math.cos(math.radians(CENTER[0]))
FREE_FLOW_KMH = 40.0  # what the routing engine assumes

# vehicle -> (share of the fleet, speed factor on free roads, how much of the congestion it suffers)
VEHICLES = {
    "sedan": (40, 1.0, 1.0),
    "suv": (20, 1.04, 1.0),
    "electric": (15, 1.0, 1.0),
    "van": (12, 1.15, 1.05),
    "motorbike": (8, 0.85, 0.55),
    "truck": (5, 1.3, 1.1),
}
assert set(VEHICLES) == set(VEHICLE_TYPES)
VEHICLE = Categorical({v: s for v, (s, _, _) in VEHICLES.items()})

WEATHER_FACTOR = {"clear": 1.0, "clouds": 1.03, "rain": 1.2, "heavy_rain": 1.45, "fog": 1.25, "snow": 1.6}
assert set(WEATHER_FACTOR) == set(WEATHER)
WEATHER_CHANGE = {  # next weather when it changes
    "clear": Categorical({"clear": 3, "clouds": 4, "fog": 0.5, "rain": 0.5}),
    "clouds": Categorical({"clear": 3, "clouds": 2, "rain": 2.5, "fog": 0.5, "heavy_rain": 0.4}),
    "rain": Categorical({"clouds": 3, "rain": 2, "heavy_rain": 1.5, "clear": 0.5}),
    "heavy_rain": Categorical({"rain": 3, "clouds": 1, "heavy_rain": 1}),
    "fog": Categorical({"clear": 2, "clouds": 2, "fog": 1}),
    "snow": Categorical({"snow": 2, "clouds": 2, "rain": 1}),
}

# Road works after `drift_at`: traffic 25% slower day and night, and the routes that cross the closed artery (a
# hidden factor, about half of the trips) take a detour that makes their moving time 2.5x longer. A model cannot
# tell which trips detour, so its relative error stays high: what its drift detector watches
# (docs/adr/0071-drift-detection-on-producer-drift.md).
DRIFT_SLOWDOWN = 1.25
DETOUR_SHARE = 0.5
DETOUR_FACTOR = 2.5

TRIPS_PER_DAY = 4000  # a simulated week is ~28k trips
INTENSITY = tuple(0.2 if h < 5 else 1.6 if (7 <= h <= 9 or 16 <= h <= 19) else 1.0 for h in range(24))
_norm = sum(INTENSITY) / 24
INTENSITY = tuple(i / _norm for i in INTENSITY)
MEAN_GAP_S = 86400 / TRIPS_PER_DAY


def traffic(hour: int, weekday: int, drifted: bool) -> float:
    """Congestion multiplier of travel time (1 = free roads)."""
    if weekday < 5:
        morning = 0.75 * math.exp(-((hour - 8) ** 2) / 1.5)
        evening_peak = 16.5 if drifted else 17.5
        evening = 0.85 * math.exp(-((hour - evening_peak) ** 2) / (3.5 if drifted else 2.0))
        level = 1.0 + morning + evening + (0.15 if 10 <= hour <= 15 else 0.0)
    else:
        level = 1.0 + 0.3 * math.exp(-((hour - 14) ** 2) / 8.0)
    if hour < 5 or hour >= 23:
        level = 0.95
    return level * (DRIFT_SLOWDOWN if drifted else 1.0)


def _from_center_km(point: tuple[float, float]) -> float:
    return math.hypot((point[0] - CENTER[0]) * KM_PER_DEG_LAT, (point[1] - CENTER[1]) * KM_PER_DEG_LON)


@dataclass(slots=True)
class Driver:
    driver_id: str
    vehicle_id: str
    vehicle_type: str
    skill: float  # hidden: < 1 is faster than the typical driver
    rating: float


class TripGenerator(StreamGenerator):
    """Trips of a fleet of drivers in one city; see the module docstring."""

    domain = DOMAIN

    def __init__(
        self,
        seed: int | None = None,
        start: datetime | str | float | None = None,
        drift_at: int | None = None,
        drivers: int = 600,
    ) -> None:
        super().__init__(seed, start, drift_at)
        rng = self.rng
        self.drivers: list[Driver] = []
        for i in range(drivers):
            skill = min(max(rng.gauss(1.0, 0.08), 0.8), 1.3)
            rating = min(max(4.6 - 3.0 * (skill - 1.0) + rng.gauss(0, 0.15), 1.0), 5.0)
            vehicle = VEHICLE.draw(rng)
            self.drivers.append(
                Driver(f"driver-{i:04d}", f"vehicle-{rng.getrandbits(24):06x}", vehicle, skill, round(rating, 2))
            )
        self.weather = "clear"
        self.weather_until = self.now
        self.temperature_base = rng.gauss(16.0, 4.0)  # the season

    def _weather_at(self, t: float) -> tuple[str, float]:
        rng = self.rng
        hour = hour_of(t)
        temperature = self.temperature_base + 6.0 * math.sin((hour - 9) / 24 * 2 * math.pi)
        if t >= self.weather_until:
            self.weather = WEATHER_CHANGE[self.weather].draw(rng)
            self.weather_until = t + rng.uniform(1800, 3 * 3600)
            self.temperature_base += rng.gauss(0, 1.0)
            self.temperature_base = min(max(self.temperature_base, -8.0), 34.0)
        weather = self.weather
        if weather == "snow" and temperature > 2.0:
            weather = "rain"
        elif weather in ("rain", "heavy_rain") and temperature < -1.0:
            weather = "snow"
        wet = 3.0 if weather in ("rain", "heavy_rain", "snow") else 0.0
        return weather, round(temperature - wet + rng.gauss(0, 0.8), 1)

    def _point(self) -> tuple[float, float]:
        rng = self.rng
        radius = abs(rng.gauss(0, 6.0)) if rng.random() < 0.85 else rng.uniform(6, 25)
        angle = rng.uniform(0, 2 * math.pi)
        return (
            CENTER[0] + radius * math.sin(angle) / KM_PER_DEG_LAT,
            CENTER[1] + radius * math.cos(angle) / KM_PER_DEG_LON,
        )

    def next_record(self) -> GeneratedEvent:
        rng = self.rng
        t = self.advance(MEAN_GAP_S, INTENSITY)
        hour, weekday = hour_of(t), weekday_of(t)
        drifted = self.drifted
        driver = self.drivers[int(len(self.drivers) * rng.random() ** 1.2)]
        weather, temperature = self._weather_at(t)
        origin = self._point()
        destination = self._point()
        dy = (destination[0] - origin[0]) * KM_PER_DEG_LAT
        dx = (destination[1] - origin[1]) * KM_PER_DEG_LON
        straight = math.hypot(dx, dy)
        if straight < 0.6:  # a walkable trip is not a taxi trip: go somewhere else
            destination = (destination[0] + 1.5 / KM_PER_DEG_LAT, destination[1])
            straight = math.hypot(dx, dy + 1.5)
        road_km = straight * rng.uniform(1.2, 1.45)  # hidden: how winding the route is
        distance = road_km * rng.gauss(1.0, 0.04)  # the routing engine's estimate of it
        naive_s = distance / FREE_FLOW_KMH * 3600 + 60

        _, speed, exposure = VEHICLES[driver.vehicle_type]
        downtown = 1.15 if max(_from_center_km(origin), _from_center_km(destination)) < 5.0 else 1.0
        congestion = (traffic(hour, weekday, drifted) * downtown) ** exposure
        weather_factor = WEATHER_FACTOR[weather] ** (1.5 if drifted else 1.0)
        moving_s = road_km / FREE_FLOW_KMH * 3600 * speed * congestion * weather_factor * driver.skill
        detour = drifted and rng.random() < DETOUR_SHARE  # drawn only after the drift: the stream before is unchanged
        if detour:
            moving_s *= DETOUR_FACTOR
        incident_p = (
            0.03 * (2.0 if weather in ("rain", "heavy_rain", "snow") else 1.0) * (1.5 if congestion > 1.4 else 1.0)
        )
        incident_s = rng.uniform(240, 1500) if rng.random() < incident_p else 0.0
        actual_s = (moving_s + incident_s + rng.uniform(60, 180)) * math.exp(rng.gauss(0, 0.07))

        data = {
            "trip_id": self.new_id(),
            "driver_id": driver.driver_id,
            "vehicle_id": driver.vehicle_id,
            "timestamp": iso(t),
            "origin": {"lat": round(origin[0], 5), "lon": round(origin[1], 5)},
            "destination": {"lat": round(destination[0], 5), "lon": round(destination[1], 5)},
            "estimated_distance_km": round(distance, 2),
            "weather": weather,
            "temperature_celsius": temperature,
            "day_of_week": DAY_NAMES[weekday],
            "hour_of_day": hour,
            "driver_rating": driver.rating,
            "vehicle_type": driver.vehicle_type,
            "initial_estimated_travel_time_seconds": round(naive_s, 1),
            "simulated_actual_travel_time_seconds": round(min(actual_s, 86_400.0), 1),
        }
        truth = {
            "incident_s": round(incident_s, 1),
            "driver_skill": driver.skill,
            "traffic": round(congestion, 3),
            "detour": detour,
        }
        return GeneratedEvent("record", data, driver.driver_id, data["trip_id"], t, truth)
